package main

import "golang.org/x/sys/unix"

// sysModifyLDT is modify_ldt(2), which only x86 has.
const sysModifyLDT = unix.SYS_MODIFY_LDT
