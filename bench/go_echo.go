// go_echo.go - the peer: an echo server on Go's net package, one goroutine
// per connection blocking in Read and Write exactly as a thread blocks in
// np_read / np_write in np_echo (examples/echo.c), with the same 16 KiB buffer
// (-buf sets another size: the benchmark also runs Go with 64 KiB).
//
//	go_echo [-buf BYTES] [[ADDR:]PORT]
//
// Prints "listening on ADDR:PORT". An explicit Read/Write loop, not io.Copy:
// io.Copy between two TCP connections would splice(2) and measure something
// else. Go's defaults stay as they are (GOMAXPROCS = cores, TCP_NODELAY on).
package main

import (
	"flag"
	"fmt"
	"net"
	"os"
	"strings"
)

var bufSize = flag.Int("buf", 16384, "read buffer bytes per connection")

func serve(c net.Conn) {
	defer c.Close()
	buf := make([]byte, *bufSize)
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
	flag.Parse()
	if *bufSize < 1 || flag.NArg() > 1 {
		fmt.Fprintln(os.Stderr, "usage: go_echo [-buf BYTES] [[ADDR:]PORT]")
		os.Exit(2)
	}
	addr := "127.0.0.1:0"
	if flag.NArg() == 1 {
		addr = flag.Arg(0)
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
