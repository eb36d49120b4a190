// godiff.go - the oracle half of the differential test: Go 1.19's runtime
// poller (os.File on pipes, net.Conn on AF_UNIX socket pairs, TCP on
// 127.0.0.1) runs the scenarios below and prints one line per scenario,
// `<name> <outcome...>`. godiff.c runs the same scenarios on netpoll; the two
// outputs must be identical (compare.sh).
//
// Outcome words: ok, timeout (os.ErrDeadlineExceeded), closing (net.ErrClosed
// / os.ErrClosed), eof, epipe, reset, refused; reads print "data N", writes
// "n=N err=WORD" ("n>0" where the count depends on socket buffer sizes).
//
// Every outcome must be independent of scheduling: a "blocked" goroutine is
// waited for (it shows up as [IO wait] in the goroutine dump) rather than
// slept for, and deadlines that must not fire are seconds away.
//
// Usage: godiff [scenario-name...]   (no argument: all scenarios in order)
package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"
)

const (
	pipeSize  = 4096 // F_SETPIPE_SZ: one page, so a partial write is exactly 4096
	bigWrite  = 10000
	fillWrite = 4 << 20 // more than any AF_UNIX send buffer
	short     = 50 * time.Millisecond
	// A write that must get some bytes out before its deadline: far enough
	// that a descheduled thread cannot miss the first write(2).
	fillDeadline = 250 * time.Millisecond
	far          = 10 * time.Second
	fSetPipeSz   = 1031
	fGetPipeSz   = 1032
	parkTimeout  = 10 * time.Second
	hangAfter    = 20 * time.Second // watchdog: a hung scenario ends the run visibly
)

func fatal(format string, args ...interface{}) {
	fmt.Fprintf(os.Stderr, "godiff(go): "+format+"\n", args...)
	os.Exit(2)
}

func word(err error) string {
	switch {
	case err == nil:
		return "ok"
	case errors.Is(err, os.ErrDeadlineExceeded):
		return "timeout"
	case errors.Is(err, net.ErrClosed), errors.Is(err, os.ErrClosed):
		return "closing"
	case errors.Is(err, io.EOF):
		return "eof"
	case errors.Is(err, syscall.EPIPE):
		return "epipe"
	case errors.Is(err, syscall.ECONNRESET):
		return "reset"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "refused"
	}
	if strings.Contains(err.Error(), "use of closed") {
		// (*os.File).SetReadDeadline returns poll.ErrFileClosing unwrapped.
		return "closing"
	}
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return "errno:" + strings.ReplaceAll(errno.Error(), " ", "_")
	}
	return "other:" + strings.ReplaceAll(err.Error(), " ", "_")
}

// rd reads once with a buffer of n bytes and describes the result.
func rd(r io.Reader, n int) string {
	buf := make([]byte, n)
	m, err := r.Read(buf)
	switch {
	case m > 0 && err == nil:
		return fmt.Sprintf("data %d", m)
	case m > 0:
		return fmt.Sprintf("data %d+%s", m, word(err))
	case err == nil:
		return "n=0 ok"
	}
	return word(err)
}

// wr writes n bytes; exact prints the count, otherwise only n=0 / n>0.
func wr(w io.Writer, n int, exact bool) string {
	m, err := w.Write(make([]byte, n))
	count := fmt.Sprintf("n=%d", m)
	if !exact && m > 0 {
		count = "n>0"
	}
	return count + " err=" + word(err)
}

func cl(c io.Closer) string { return word(c.Close()) }

// parked returns how many goroutines are blocked in the poller.
func parked() int {
	buf := make([]byte, 1<<20)
	n := runtime.Stack(buf, true)
	return bytes.Count(buf[:n], []byte("[IO wait"))
}

// waitParked waits until exactly k goroutines are blocked in the poller.
func waitParked(k int) {
	end := time.Now().Add(parkTimeout)
	for parked() != k {
		if time.Now().After(end) {
			fatal("timed out waiting for %d parked goroutines (have %d)", k, parked())
		}
		time.Sleep(time.Millisecond)
	}
}

// async runs fn in a goroutine; the returned function waits for its result.
func async(fn func() string) func() string {
	ch := make(chan string, 1)
	go func() { ch <- fn() }()
	return func() string { return <-ch }
}

func past() time.Time { return time.Now().Add(-time.Second) }

func pipe() (*os.File, *os.File) {
	r, w, err := os.Pipe()
	if err != nil {
		fatal("pipe: %v", err)
	}
	return r, w
}

// smallPipe has a 4096-byte buffer, so a 10000-byte write stops at 4096.
func smallPipe() (*os.File, *os.File) {
	r, w := pipe()
	rc, err := w.SyscallConn()
	if err != nil {
		fatal("SyscallConn: %v", err)
	}
	err = rc.Control(func(fd uintptr) {
		if _, _, e := syscall.Syscall(syscall.SYS_FCNTL, fd, fSetPipeSz, pipeSize); e != 0 {
			fatal("F_SETPIPE_SZ: %v", e)
		}
		if sz, _, e := syscall.Syscall(syscall.SYS_FCNTL, fd, fGetPipeSz, 0); e != 0 || sz != pipeSize {
			fatal("F_GETPIPE_SZ: %d %v", sz, e)
		}
	})
	if err != nil {
		fatal("Control: %v", err)
	}
	return r, w
}

func sockpair() (*net.UnixConn, *net.UnixConn) {
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		fatal("socketpair: %v", err)
	}
	conv := func(fd int) *net.UnixConn {
		f := os.NewFile(uintptr(fd), "sock")
		c, err := net.FileConn(f) // dups fd, non-blocking, registered with the poller
		if err != nil {
			fatal("FileConn: %v", err)
		}
		f.Close()
		return c.(*net.UnixConn)
	}
	return conv(fds[0]), conv(fds[1])
}

func listen() net.Listener {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		fatal("listen: %v", err)
	}
	return ln
}

type scenario struct {
	name string
	run  func() string
}

func join(parts ...string) string { return strings.Join(parts, " ") }

var scenarios = []scenario{
	// ---- pipes: reads and read deadlines ----
	{"pipe_read_data", func() string {
		r, w := pipe()
		defer r.Close()
		defer w.Close()
		w.Write([]byte("hello"))
		return rd(r, 16)
	}},
	{"pipe_read_blocks_until_data", func() string {
		r, w := pipe()
		defer r.Close()
		defer w.Close()
		res := async(func() string { return rd(r, 16) })
		waitParked(1)
		w.Write([]byte("hey"))
		return res()
	}},
	{"pipe_past_deadline_data_ready", func() string {
		r, w := pipe()
		defer r.Close()
		defer w.Close()
		w.Write([]byte("x"))
		r.SetReadDeadline(past())
		return rd(r, 16)
	}},
	{"pipe_deadline_expires", func() string {
		r, w := pipe()
		defer r.Close()
		defer w.Close()
		deadline := time.Now().Add(short)
		r.SetReadDeadline(deadline)
		out := rd(r, 16)
		if time.Now().Before(deadline) {
			return out + " early"
		}
		return out + " at>=deadline"
	}},
	{"pipe_expired_deadline_sticky", func() string {
		r, w := pipe()
		defer r.Close()
		defer w.Close()
		r.SetReadDeadline(time.Now().Add(short))
		first := rd(r, 16)
		w.Write([]byte("ab"))
		return join(first, rd(r, 16))
	}},
	{"pipe_deadline_cleared_after_expiry", func() string {
		r, w := pipe()
		defer r.Close()
		defer w.Close()
		r.SetReadDeadline(past())
		first := rd(r, 16)
		r.SetReadDeadline(time.Time{})
		w.Write([]byte("abcd"))
		return join(first, rd(r, 16))
	}},
	{"pipe_deadline_moved_later_after_expiry", func() string {
		r, w := pipe()
		defer r.Close()
		defer w.Close()
		w.Write([]byte("abc"))
		r.SetReadDeadline(past())
		first := rd(r, 16)
		r.SetReadDeadline(time.Now().Add(far))
		return join(first, rd(r, 16))
	}},
	{"pipe_deadline_extended_while_blocked", func() string {
		r, w := pipe()
		defer r.Close()
		defer w.Close()
		res := async(func() string { return rd(r, 16) })
		waitParked(1)
		// Armed while blocked, then moved at once (not racing the start of
		// the reader): the first deadline must never fire.
		r.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
		r.SetReadDeadline(time.Now().Add(far))
		time.Sleep(time.Second) // well past the first deadline
		state := "woken"
		if parked() == 1 {
			state = "blocked"
		}
		w.Write([]byte("data!"))
		return join(state, res())
	}},
	{"pipe_deadline_cleared_while_blocked", func() string {
		r, w := pipe()
		defer r.Close()
		defer w.Close()
		res := async(func() string { return rd(r, 16) })
		waitParked(1)
		r.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
		r.SetReadDeadline(time.Time{})
		time.Sleep(time.Second) // well past the cleared deadline
		state := "woken"
		if parked() == 1 {
			state = "blocked"
		}
		w.Write([]byte("xyz"))
		return join(state, res())
	}},
	{"pipe_deadline_shortened_to_past_while_blocked", func() string {
		r, w := pipe()
		defer r.Close()
		defer w.Close()
		r.SetReadDeadline(time.Now().Add(far))
		res := async(func() string { return rd(r, 16) })
		waitParked(1)
		r.SetReadDeadline(past())
		return res()
	}},
	{"pipe_deadline_set_while_blocked", func() string {
		r, w := pipe()
		defer r.Close()
		defer w.Close()
		res := async(func() string { return rd(r, 16) })
		waitParked(1)
		r.SetReadDeadline(time.Now().Add(short))
		return res()
	}},
	{"pipe_deadline_changed_concurrently", func() string {
		r, w := pipe()
		defer r.Close()
		defer w.Close()
		r.SetReadDeadline(time.Now().Add(far))
		res := async(func() string { return rd(r, 16) })
		waitParked(1)
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 200; i++ {
				r.SetReadDeadline(time.Now().Add(far + time.Duration(i)*time.Millisecond))
			}
			r.SetReadDeadline(time.Now().Add(short))
		}()
		wg.Wait()
		return res()
	}},
	{"pipe_many_short_deadlines", func() string {
		r, w := pipe()
		defer r.Close()
		defer w.Close()
		var out []string
		for _, d := range []time.Duration{1, time.Microsecond, 100 * time.Microsecond,
			time.Millisecond, 3 * time.Millisecond, 10 * time.Millisecond} {
			r.SetReadDeadline(time.Now().Add(d))
			out = append(out, rd(r, 16))
		}
		return join(out...)
	}},
	{"pipe_data_before_deadline", func() string {
		r, w := pipe()
		defer r.Close()
		defer w.Close()
		r.SetReadDeadline(time.Now().Add(far))
		res := async(func() string { return rd(r, 16) })
		waitParked(1)
		w.Write([]byte("abc"))
		return res()
	}},
	{"pipe_max_deadline", func() string {
		r, w := pipe()
		defer r.Close()
		defer w.Close()
		r.SetReadDeadline(time.Now().Add(math.MaxInt64))
		res := async(func() string { return rd(r, 16) })
		waitParked(1)
		w.Write([]byte("abcdef"))
		return res()
	}},
	{"pipe_two_readers_deadline", func() string {
		r, w := pipe()
		defer r.Close()
		defer w.Close()
		ch := make(chan string, 2)
		for i := 0; i < 2; i++ {
			go func() { ch <- rd(r, 16) }()
		}
		waitParked(1) // the other one queues on the read lock
		r.SetReadDeadline(time.Now().Add(short))
		return join(<-ch, <-ch)
	}},
	{"pipe_two_readers_data_then_close", func() string {
		r, w := pipe()
		defer w.Close()
		ch := make(chan string, 2)
		for i := 0; i < 2; i++ {
			go func() { ch <- rd(r, 16) }()
		}
		waitParked(1)
		w.Write([]byte("a"))
		first := <-ch
		c := cl(r)
		return join(first, <-ch, "close="+c)
	}},
	{"pipe_closed_beats_deadline", func() string {
		r, w := pipe()
		w.Write([]byte("abc"))
		r.SetReadDeadline(past())
		w.SetWriteDeadline(past())
		r.Close()
		w.Close()
		return join(rd(r, 16), wr(w, 1, true))
	}},
	{"pipe_zero_read", func() string {
		r, w := pipe()
		defer r.Close()
		defer w.Close()
		first := rd(r, 0)
		r.SetReadDeadline(past())
		return join(first, rd(r, 0))
	}},

	// ---- pipes: writes and write deadlines ----
	{"pipe_write_deadline_partial", func() string {
		r, w := smallPipe()
		defer r.Close()
		defer w.Close()
		w.SetWriteDeadline(time.Now().Add(fillDeadline))
		return wr(w, bigWrite, true)
	}},
	{"pipe_write_deadline_partial_after_data", func() string {
		r, w := smallPipe()
		defer r.Close()
		defer w.Close()
		first := wr(w, 100, true)
		w.SetWriteDeadline(time.Now().Add(fillDeadline))
		return join(first, wr(w, bigWrite, true))
	}},
	{"pipe_write_past_deadline", func() string {
		r, w := pipe()
		defer r.Close()
		defer w.Close()
		w.SetWriteDeadline(past())
		return wr(w, 1, true)
	}},
	{"pipe_write_deadline_past_while_blocked", func() string {
		r, w := smallPipe()
		defer r.Close()
		defer w.Close()
		res := async(func() string { return wr(w, bigWrite, true) })
		waitParked(1)
		w.SetWriteDeadline(past())
		return res()
	}},
	{"pipe_writer_unblocked_by_reader", func() string {
		r, w := smallPipe()
		defer r.Close()
		defer w.Close()
		res := async(func() string { return wr(w, bigWrite, true) })
		total := 0
		buf := make([]byte, 1000)
		for total < bigWrite {
			n, err := r.Read(buf)
			if err != nil {
				return "read " + word(err)
			}
			total += n
		}
		return join(res(), fmt.Sprintf("read=%d", total))
	}},
	{"pipe_zero_write", func() string {
		r, w := pipe()
		defer r.Close()
		defer w.Close()
		first := wr(w, 0, true)
		w.SetWriteDeadline(past())
		return join(first, wr(w, 0, true))
	}},

	// ---- pipes: close, EOF, EPIPE ----
	{"pipe_close_blocked_reader", func() string {
		r, w := pipe()
		defer w.Close()
		res := async(func() string { return rd(r, 16) })
		waitParked(1)
		c := cl(r)
		return join("read="+res(), "close="+c)
	}},
	{"pipe_close_blocked_writer", func() string {
		r, w := smallPipe()
		defer r.Close()
		res := async(func() string { return wr(w, bigWrite, true) })
		waitParked(1)
		c := cl(w)
		return join(res(), "close="+c)
	}},
	{"pipe_ops_after_close", func() string {
		r, w := pipe()
		r.Close()
		w.Close()
		return join("read="+rd(r, 16), "zeroread="+rd(r, 0), "write="+wr(w, 3, true),
			"deadline="+word(r.SetReadDeadline(time.Now().Add(far))))
	}},
	{"pipe_double_close", func() string {
		r, w := pipe()
		defer w.Close()
		first := cl(r)
		return join(first, cl(r))
	}},
	{"pipe_epipe", func() string {
		r, w := pipe()
		defer w.Close()
		r.Close()
		return wr(w, 3, true)
	}},
	{"pipe_epipe_wakes_blocked_writer", func() string {
		r, w := smallPipe()
		defer w.Close()
		res := async(func() string { return wr(w, bigWrite, true) })
		waitParked(1)
		r.Close()
		return res()
	}},
	{"pipe_eof_after_writer_close", func() string {
		r, w := pipe()
		defer r.Close()
		w.Write([]byte("abc"))
		w.Close()
		first := rd(r, 16)
		return join(first, rd(r, 16))
	}},
	{"pipe_eof_wakes_blocked_reader", func() string {
		r, w := pipe()
		defer r.Close()
		res := async(func() string { return rd(r, 16) })
		waitParked(1)
		w.Close()
		return res()
	}},

	// ---- AF_UNIX stream socket pairs ----
	{"sock_read_deadline_leaves_write", func() string {
		a, b := sockpair()
		defer a.Close()
		defer b.Close()
		a.SetReadDeadline(past())
		return join(wr(a, 3, true), rd(b, 16), rd(a, 16))
	}},
	{"sock_write_deadline_leaves_read", func() string {
		a, b := sockpair()
		defer a.Close()
		defer b.Close()
		a.SetWriteDeadline(past())
		b.Write([]byte("xy"))
		return join(rd(a, 16), wr(a, 1, true))
	}},
	{"sock_set_deadline_both", func() string {
		a, b := sockpair()
		defer a.Close()
		defer b.Close()
		a.SetDeadline(time.Now().Add(short))
		return join("read="+rd(a, 16), "write="+wr(a, fillWrite, false))
	}},
	{"sock_write_deadline_full", func() string {
		a, b := sockpair()
		defer a.Close()
		defer b.Close()
		a.SetWriteDeadline(time.Now().Add(fillDeadline))
		first := wr(a, fillWrite, false)
		a.SetWriteDeadline(time.Now().Add(short))
		return join(first, wr(a, 1, true))
	}},
	{"sock_read_timeout_leaves_writer_blocked", func() string {
		a, b := sockpair()
		defer a.Close()
		defer b.Close()
		res := async(func() string { return wr(a, fillWrite, false) })
		waitParked(1)
		a.SetReadDeadline(time.Now().Add(short))
		read := rd(a, 16)
		state := "woken"
		if parked() == 1 {
			state = "blocked"
		}
		a.SetWriteDeadline(past())
		return join("read="+read, "writer="+state, "write="+res())
	}},
	{"sock_write_timeout_leaves_reader_blocked", func() string {
		a, b := sockpair()
		defer a.Close()
		defer b.Close()
		res := async(func() string { return rd(a, 16) })
		waitParked(1)
		a.SetWriteDeadline(time.Now().Add(fillDeadline))
		write := wr(a, fillWrite, false)
		state := "woken"
		if parked() == 1 {
			state = "blocked"
		}
		b.Write([]byte("late"))
		return join("write="+write, "reader="+state, "read="+res())
	}},
	{"sock_deadline_wakes_reader_and_writer", func() string {
		a, b := sockpair()
		defer a.Close()
		defer b.Close()
		wres := async(func() string { return wr(a, fillWrite, false) })
		rres := async(func() string { return rd(a, 16) })
		waitParked(2)
		a.SetDeadline(time.Now().Add(short))
		return join("read="+rres(), "write="+wres())
	}},
	{"sock_writev", func() string {
		a, b := sockpair()
		defer a.Close()
		defer b.Close()
		wv := func(bufs ...[]byte) string {
			v := net.Buffers(bufs)
			n, err := v.WriteTo(a)
			return fmt.Sprintf("n=%d err=%s", n, word(err))
		}
		out := []string{wv([]byte("abc"), nil, []byte("defgh")), rd(b, 16), wv(nil, nil)}
		a.SetWriteDeadline(past())
		out = append(out, wv([]byte("x"), []byte("y")))
		a.SetWriteDeadline(time.Time{})
		a.SetWriteDeadline(time.Now().Add(fillDeadline))
		out = append(out, wr(a, fillWrite, false))
		a.SetWriteDeadline(time.Now().Add(short))
		out = append(out, wv([]byte("x"), []byte("y")))
		return join(out...)
	}},
	{"sock_shutdown_wr", func() string {
		a, b := sockpair()
		defer a.Close()
		defer b.Close()
		a.CloseWrite()
		return join(rd(b, 16), wr(b, 1, true), rd(a, 16), wr(a, 1, true))
	}},
	{"sock_shutdown_wr_wakes_blocked_reader", func() string {
		a, b := sockpair()
		defer a.Close()
		defer b.Close()
		res := async(func() string { return rd(b, 16) })
		waitParked(1)
		a.CloseWrite()
		return res()
	}},
	{"sock_shutdown_rd", func() string {
		a, b := sockpair()
		defer a.Close()
		defer b.Close()
		a.CloseRead()
		return join(rd(a, 16), wr(b, 1, true), wr(a, 2, true), rd(b, 16))
	}},
	{"sock_shutdown_rd_wakes_blocked_reader", func() string {
		a, b := sockpair()
		defer a.Close()
		defer b.Close()
		res := async(func() string { return rd(a, 16) })
		waitParked(1)
		a.CloseRead()
		return res()
	}},
	{"sock_peer_close_unread_reset", func() string {
		a, b := sockpair()
		defer a.Close()
		a.Write([]byte("hello"))
		b.Close()
		first := rd(a, 16)
		return join(first, rd(a, 16))
	}},
	{"sock_reset_wakes_blocked_reader", func() string {
		a, b := sockpair()
		defer a.Close()
		a.Write([]byte("hello"))
		res := async(func() string { return rd(a, 16) })
		waitParked(1)
		b.Close()
		return res()
	}},
	{"sock_peer_close_eof", func() string {
		a, b := sockpair()
		defer a.Close()
		b.Write([]byte("bye"))
		b.Close()
		first := rd(a, 16)
		return join(first, rd(a, 16))
	}},
	{"sock_write_epipe", func() string {
		a, b := sockpair()
		defer a.Close()
		b.Close()
		return wr(a, 3, true)
	}},
	{"sock_peer_close_wakes_blocked_writer", func() string {
		a, b := sockpair()
		defer a.Close()
		res := async(func() string { return wr(a, fillWrite, false) })
		waitParked(1)
		b.Close()
		return res()
	}},
	{"sock_close_blocked_reader_and_writer", func() string {
		a, b := sockpair()
		defer b.Close()
		wres := async(func() string { return wr(a, fillWrite, false) })
		rres := async(func() string { return rd(a, 16) })
		waitParked(2)
		c := cl(a)
		return join("read="+rres(), "write="+wres(), "close="+c)
	}},
	{"sock_zero_read_write", func() string {
		a, b := sockpair()
		defer b.Close()
		out := []string{rd(a, 0), wr(a, 0, true)}
		a.SetDeadline(past())
		out = append(out, rd(a, 0), wr(a, 0, true))
		a.Close()
		out = append(out, rd(a, 0), wr(a, 0, true))
		return join(out...)
	}},

	// ---- TCP on 127.0.0.1 ----
	{"tcp_accept_deadline", func() string {
		ln := listen()
		defer ln.Close()
		ln.(*net.TCPListener).SetDeadline(time.Now().Add(short))
		_, err := ln.Accept()
		return word(err)
	}},
	{"tcp_accept_close_while_blocked", func() string {
		ln := listen()
		res := async(func() string {
			_, err := ln.Accept()
			return word(err)
		})
		waitParked(1)
		c := cl(ln)
		return join("accept="+res(), "close="+c)
	}},
	{"tcp_connect_refused", func() string {
		ln := listen()
		addr := ln.Addr().String()
		ln.Close()
		_, err := net.Dial("tcp4", addr)
		return word(err)
	}},
	{"tcp_accept_pending_past_deadline", func() string {
		ln := listen()
		defer ln.Close()
		c, err := net.Dial("tcp4", ln.Addr().String())
		if err != nil {
			return "dial=" + word(err)
		}
		defer c.Close()
		tl := ln.(*net.TCPListener)
		tl.SetDeadline(past())
		_, err = ln.Accept()
		first := word(err)
		tl.SetDeadline(time.Time{})
		s, err := ln.Accept()
		if err == nil {
			s.Close()
		}
		return join(first, word(err))
	}},
	{"udp_icmp_refused_wakes_reader", func() string {
		ln := listen() // a free port: UDP on the TCP listener's number is closed
		ln.Close()
		addr, _ := net.ResolveUDPAddr("udp4", ln.Addr().String())
		c, err := net.DialUDP("udp4", nil, addr)
		if err != nil {
			return "dial=" + word(err)
		}
		defer c.Close()
		res := async(func() string { return rd(c, 16) })
		waitParked(1)
		return join(wr(c, 1, true), res())
	}},
	{"tcp_accept_read_write", func() string {
		ln := listen()
		defer ln.Close()
		res := async(func() string {
			c, err := ln.Accept()
			if err != nil {
				return "accept=" + word(err)
			}
			defer c.Close()
			out := "accept=ok " + rd(c, 16)
			c.SetReadDeadline(time.Now().Add(short))
			out += " " + rd(c, 16)
			return out + " " + wr(c, 4, true)
		})
		c, err := net.Dial("tcp4", ln.Addr().String())
		if err != nil {
			return "dial=" + word(err)
		}
		defer c.Close()
		sent := wr(c, 4, true)
		server := res()
		return join(sent, server, rd(c, 16), rd(c, 16))
	}},
}

func main() {
	want := map[string]bool{}
	for _, a := range os.Args[1:] {
		want[a] = true
	}
	for _, s := range scenarios {
		if len(want) > 0 && !want[s.name] {
			continue
		}
		name := s.name
		dog := time.AfterFunc(hangAfter, func() {
			fmt.Printf("%s HUNG (no result after %d s)\n", name, hangAfter/time.Second)
			os.Exit(3)
		})
		out := s.run()
		dog.Stop()
		fmt.Printf("%s %s\n", s.name, out)
		if n := parked(); n != 0 {
			fatal("%s left %d goroutines blocked", s.name, n)
		}
	}
}
