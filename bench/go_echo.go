// go_echo.go - the peer: an echo server on Go's net package, one goroutine
// per connection blocking in Read and Write exactly as a thread blocks in
// np_read / np_write in np_echo (examples/echo.c), with the same 16 KiB buffer.
//
//	go_echo [[ADDR:]PORT]
//
// Prints "listening on ADDR:PORT". An explicit Read/Write loop, not io.Copy:
// io.Copy between two TCP connections would splice(2) and measure something
// else. Go's defaults stay as they are (GOMAXPROCS = cores, TCP_NODELAY on).
package main

import (
	"fmt"
	"net"
	"os"
	"strings"
)

func serve(c net.Conn) {
	defer c.Close()
	buf := make([]byte, 16384)
	for {
		n, err := c.Read(buf)
		if n > 0 {
			if _, werr := c.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

func main() {
	addr := "127.0.0.1:0"
	if len(os.Args) > 1 {
		addr = os.Args[1]
		if !strings.Contains(addr, ":") {
			addr = "127.0.0.1:" + addr
		}
	}
	ln, err := net.Listen("tcp4", addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "go_echo:", err)
		os.Exit(1)
	}
	fmt.Printf("listening on %s\n", ln.Addr())
	for {
		c, err := ln.Accept()
		if err != nil {
			fmt.Fprintln(os.Stderr, "go_echo: accept:", err)
			continue
		}
		go serve(c)
	}
}
