package sandbox

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/nemoclaw/nemoclaw/runner/policy"
)

// dbEntry is one line of /etc/passwd or /etc/group: name and numeric ids.
type dbEntry struct {
	name string
	id   int
	gid  int // passwd only: the primary group
}

// hostDB reads the host's /etc/passwd and /etc/group once per Start: ids
// are resolved and the identity files built from the same reads (each
// read cost a sandbox's start ~20 µs, and there were six).
type hostDB struct {
	raw     map[string][]byte
	entries map[string][]dbEntry
}

func newHostDB() *hostDB {
	return &hostDB{raw: map[string][]byte{}, entries: map[string][]dbEntry{}}
}

// file returns path's contents (nil when unreadable) and its entries.
func (h *hostDB) file(path string) ([]byte, []dbEntry) {
	if e, ok := h.entries[path]; ok {
		return h.raw[path], e
	}
	b, err := os.ReadFile(path)
	if err != nil {
		b = nil
	}
	h.raw[path], h.entries[path] = b, parseDB(b)
	return h.raw[path], h.entries[path]
}

// db returns path's entries.
func (h *hostDB) db(path string) []dbEntry {
	_, e := h.file(path)
	return e
}

// parseDB parses /etc/passwd-style contents.
func parseDB(b []byte) []dbEntry {
	var out []dbEntry
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := strings.Split(sc.Text(), ":")
		if len(f) < 3 || strings.HasPrefix(f[0], "#") {
			continue
		}
		id, err := strconv.Atoi(f[2])
		if err != nil {
			continue
		}
		e := dbEntry{name: f[0], id: id, gid: -1}
		if len(f) > 3 {
			if g, err := strconv.Atoi(f[3]); err == nil {
				e.gid = g
			}
		}
		out = append(out, e)
	}
	return out
}

func findName(db []dbEntry, name string) (dbEntry, bool) {
	for _, e := range db {
		if e.name == name {
			return e, true
		}
	}
	return dbEntry{}, false
}

// name returns the name of id in the passwd-style file path, or def.
func (h *hostDB) name(path string, id int, def string) string {
	for _, e := range h.db(path) {
		if e.id == id {
			return e.name
		}
	}
	return def
}

// resolveIDs turns process.run_as_user/run_as_group into the uid and gid the
// agent runs as. A name the host does not know (NemoClaw's "sandbox") is
// mapped to uid/gid 10001, and note says so. As root, host root is refused;
// rootless, the ids are those inside the user namespace, mapped onto the
// caller's own.
func resolveIDs(p *policy.ProcessPolicy, rootless bool, h *hostDB) (uid, gid int, note string, err error) {
	user, group := "", ""
	if p != nil {
		user, group = p.RunAsUser, p.RunAsGroup
	}
	if user == "" && rootless {
		uid, gid = os.Getuid(), os.Getgid()
		if group == "" {
			return uid, gid, "", nil
		}
	}
	if user == "" && !rootless {
		user = "sandbox"
	}
	var notes []string
	if user != "" {
		if n, e := strconv.Atoi(user); e == nil {
			uid, gid = n, n
		} else if ent, ok := findName(h.db("/etc/passwd"), user); ok {
			uid, gid = ent.id, ent.gid
		} else {
			uid, gid = mappedID, mappedID
			notes = append(notes, fmt.Sprintf("run_as_user %q is not a user of this host: mapped to uid %d", user, mappedID))
		}
	}
	if group != "" {
		if n, e := strconv.Atoi(group); e == nil {
			gid = n
		} else if ent, ok := findName(h.db("/etc/group"), group); ok {
			gid = ent.id
		} else {
			gid = mappedID
			notes = append(notes, fmt.Sprintf("run_as_group %q is not a group of this host: mapped to gid %d", group, mappedID))
		}
	}
	if gid < 0 {
		gid = uid
	}
	if !rootless && uid == 0 {
		return 0, 0, "", fmt.Errorf("run_as_user %q is host root; nemoclaw will not run an agent as root: set process.run_as_user to an unprivileged user (e.g. sandbox)", user)
	}
	if rootless && len(notes) > 0 {
		notes = append(notes, fmt.Sprintf("the user namespace maps uid %d/gid %d to host uid %d/gid %d", uid, gid, os.Getuid(), os.Getgid()))
	}
	return uid, gid, strings.Join(notes, "; "), nil
}

// identityFiles returns /etc/passwd and /etc/group copies that name the
// mapped user and group, so that whoami, prompts and git work. Entries the
// caller already supplies are left alone.
func identityFiles(p *policy.ProcessPolicy, uid, gid int, have []File, h *hostDB) []File {
	user, group := "sandbox", "sandbox"
	if p != nil && p.RunAsUser != "" {
		user = p.RunAsUser
	}
	if p != nil && p.RunAsGroup != "" {
		group = p.RunAsGroup
	}
	if _, err := strconv.Atoi(user); err == nil {
		user = "sandbox"
	}
	if _, err := strconv.Atoi(group); err == nil {
		group = user
	}
	supplied := map[string]bool{}
	for _, f := range have {
		supplied[f.Path] = true
	}
	var out []File
	add := func(path, line string, known bool) {
		if supplied[path] || known {
			return
		}
		b, _ := h.file(path)
		if b == nil {
			return
		}
		b = append([]byte(nil), b...) // the cached copy stays as read
		if len(b) > 0 && b[len(b)-1] != '\n' {
			b = append(b, '\n')
		}
		out = append(out, File{Path: path, Data: append(b, line...)})
	}
	_, userKnown := findName(h.db("/etc/passwd"), user)
	_, groupKnown := findName(h.db("/etc/group"), group)
	add("/etc/passwd", fmt.Sprintf("%s:x:%d:%d:nemoclaw sandbox:%s:/bin/sh\n", user, uid, gid, Workdir), userKnown)
	add("/etc/group", fmt.Sprintf("%s:x:%d:\n", group, gid), groupKnown)
	return out
}
