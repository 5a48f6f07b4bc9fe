//go:build !amd64

package main

// sysModifyLDT is modify_ldt(2), which only x86 has.
const sysModifyLDT = 0
