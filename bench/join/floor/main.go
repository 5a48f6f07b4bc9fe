// Command floor is the lower bound of `nemoclaw sandbox exec NAME --
// CMD`: a Go program that links nothing but the standard library, dials
// the sandbox's control socket, sends the exec request with its stdin,
// stdout and stderr (the frame runner/supervisor reads) and waits for the
// exit. What the CLI costs beyond it is its own start (a bigger binary,
// package initialisation, flag parsing) and its checks.
//
//	floor SOCKET CMD [ARG...]
package main

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"syscall"
)

func main() {
	if len(os.Args) < 3 {
		fmt.Fprintln(os.Stderr, "usage: floor SOCKET CMD [ARG...]")
		os.Exit(2)
	}
	body, _ := json.Marshal(map[string]any{"v": 1, "op": "exec", "exec": map[string]any{"command": os.Args[2:]}})
	frame := append([]byte("NCX\x01\x00\x00\x00\x00"), body...)
	binary.BigEndian.PutUint32(frame[4:8], uint32(len(body)))
	c, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: os.Args[1], Net: "unix"})
	if err != nil {
		fmt.Fprintln(os.Stderr, "floor:", err)
		os.Exit(1)
	}
	if _, _, err := c.WriteMsgUnix(frame, syscall.UnixRights(0, 1, 2), nil); err != nil {
		fmt.Fprintln(os.Stderr, "floor:", err)
		os.Exit(1)
	}
	r := bufio.NewReader(c)
	for {
		line, err := r.ReadBytes('\n')
		if err != nil {
			fmt.Fprintln(os.Stderr, "floor: no exit:", err)
			os.Exit(1)
		}
		var resp struct {
			OK       bool   `json:"ok"`
			Error    string `json:"error"`
			ExitCode *int   `json:"exit_code"`
		}
		if err := json.Unmarshal(line, &resp); err != nil || !resp.OK {
			fmt.Fprintln(os.Stderr, "floor:", resp.Error, err)
			os.Exit(1)
		}
		if resp.ExitCode != nil {
			os.Exit(*resp.ExitCode)
		}
	}
}
