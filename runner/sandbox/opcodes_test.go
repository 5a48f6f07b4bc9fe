package sandbox

import (
	"os"
	"regexp"
	"strconv"
	"testing"
)

// TestOpcodesMatchInit: the program's opcodes and the join limits are
// written twice, in program.go/join.go and in nsinit.c (the C init cannot
// import Go); this keeps the two in step.
func TestOpcodesMatchInit(t *testing.T) {
	src, err := os.ReadFile("nsinit.c")
	if err != nil {
		t.Fatal(err)
	}
	c := map[string]int{}
	for _, m := range regexp.MustCompile(`(?m)^\s*(OP_[A-Z0-9_]+) = (\d+),`).FindAllSubmatch(src, -1) {
		c[string(m[1])], _ = strconv.Atoi(string(m[2]))
	}
	goOps := map[string]int{
		"OP_HOSTNAME": opHostname, "OP_MOUNT": opMount, "OP_MKDIR": opMkdir, "OP_SYMLINK": opSymlink,
		"OP_MKFILE": opMkfile, "OP_UMOUNT": opUmount, "OP_RMDIR": opRmdir, "OP_WRITE_OPTIONAL": opWriteOptional,
		"OP_LISTEN": opListen, "OP_RLIMIT": opRlimit, "OP_BINDFILE": opBindFile, "OP_DUMPABLE0": opDumpable0,
		"OP_STOP_TIMEOUT": opStopTimeout, "OP_BIND_ACCESS": opBindAccess, "OP_PROTECT": opProtect,
		"OP_CHOWN": opChown, "OP_BIND_WORKSPACE": opBindWorkspace, "OP_LANDLOCK_RULESET": opLandlockRuleset,
		"OP_LANDLOCK_PATH": opLandlockPath, "OP_LANDLOCK_PORT": opLandlockPort, "OP_MOUNT_ATTR": opMountAttr,
		"OP_NNP": opNoNewPrivs, "OP_CAPBSET": opCapBset, "OP_SECUREBITS": opSecurebits, "OP_SETIDS": opSetIDs,
		"OP_CAPCLEAR": opCapClear, "OP_LANDLOCK_RESTRICT": opLandlockRestrict, "OP_SECCOMP": opSeccomp,
		"OP_EXEC": opExec, "OP_JOIN": opJoin, "OP_JOIN_SIGNAL": opJoinSignal,
	}
	for name, v := range goOps {
		if c[name] != v {
			t.Errorf("%s: nsinit.c %d, Go %d", name, c[name], v)
		}
	}
	for name := range c {
		if _, ok := goOps[name]; !ok {
			t.Errorf("nsinit.c's %s has no Go opcode in this test", name)
		}
	}
	num := func(name string) int {
		m := regexp.MustCompile(`(?m)^#define ` + name + ` \(?(\d+)u?(?: << (\d+))?\)?`).FindSubmatch(src)
		if m == nil {
			t.Fatalf("nsinit.c defines no %s", name)
		}
		v, _ := strconv.Atoi(string(m[1]))
		if len(m[2]) > 0 {
			s, _ := strconv.Atoi(string(m[2]))
			v <<= s
		}
		return v
	}
	if n := num("JOIN_MAX"); n < maxJoinRequest {
		t.Errorf("nsinit.c's JOIN_MAX %d is below maxJoinRequest %d", n, maxJoinRequest)
	}
	if n := num("MAX_ARGS"); n < maxJoinArgs+5 {
		t.Errorf("nsinit.c's MAX_ARGS %d is below maxJoinArgs+5 (%d)", n, maxJoinArgs+5)
	}
}
