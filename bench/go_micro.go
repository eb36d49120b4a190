// go_micro.go - the Go side of bench/micro.c: the same four measurements on
// Go's runtime poller, printed in the same "micro name=... impl=go" format.
//
//	go_micro [SECONDS_PER_TIMED_TEST] [WAKE_ITERATIONS] [TESTS]
//
// TESTS: comma-separated subset of wake,pingpong,openclose,deadline (default all).
//
//	wake      a goroutine blocked in (*os.File).Read on a pipe (the pipe is in
//	          the netpoller) until another goroutine writes a byte: ns from
//	          just before the Write to just after the Read returns. The writer
//	          sleeps 200us first so the reader is surely parked.
//	pingpong  two goroutines bouncing one byte over two pipes (round trips/s).
//	openclose pipe2(O_NONBLOCK) + os.NewFile x2 (registers with the poller)
//	          + Close x2: descriptor open+close cycles per second.
//	deadline  (*os.File).SetDeadline calls/s on 1 and round-robin on 1000
//	          descriptors, each with a deadline 60 s ahead.
package main

import (
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

var seconds = 1.0
var wakeIterations = 5000

func must(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "go_micro:", err)
		os.Exit(1)
	}
}

func benchWake() {
	r, w, err := os.Pipe()
	must(err)
	done := make(chan time.Time)
	go func() {
		b := make([]byte, 1)
		for {
			n, err := r.Read(b)
			t1 := time.Now()
			if n != 1 || err != nil {
				close(done)
				return
			}
			done <- t1
		}
	}()
	samples := make([]int64, wakeIterations)
	b := []byte{'x'}
	for i := range samples {
		time.Sleep(200 * time.Microsecond)
		t0 := time.Now()
		_, err := w.Write(b)
		must(err)
		t1 := <-done
		samples[i] = int64(t1.Sub(t0))
	}
	w.Close()
	<-done
	r.Close()
	sort.Slice(samples, func(i, j int) bool { return samples[i] < samples[j] })
	n := len(samples)
	fmt.Printf("micro name=wake impl=go n=%d p50_ns=%d p90_ns=%d p99_ns=%d\n", n, samples[n/2], samples[n*9/10], samples[n*99/100])
}

func benchPingPong() {
	a2bR, a2bW, err := os.Pipe()
	must(err)
	b2aR, b2aW, err := os.Pipe()
	must(err)
	go func() {
		b := make([]byte, 1)
		for {
			if n, err := a2bR.Read(b); n != 1 || err != nil {
				return
			}
			if _, err := b2aW.Write(b); err != nil {
				return
			}
		}
	}()
	b := []byte{'x'}
	rounds := 0
	start := time.Now()
	end := start.Add(time.Duration(seconds * float64(time.Second)))
	now := start
	for now.Before(end) {
		for i := 0; i < 256; i++ {
			_, err := a2bW.Write(b)
			must(err)
			_, err = b2aR.Read(b)
			must(err)
		}
		rounds += 256
		now = time.Now()
	}
	secs := now.Sub(start).Seconds()
	a2bW.Close()
	a2bR.Close()
	b2aR.Close()
	b2aW.Close()
	fmt.Printf("micro name=pingpong impl=go per_s=%.0f\n", float64(rounds)/secs)
}

func benchOpenClose() {
	cycles := 0
	start := time.Now()
	end := start.Add(time.Duration(seconds * float64(time.Second)))
	now := start
	var p [2]int
	for now.Before(end) {
		for i := 0; i < 256; i++ {
			must(syscall.Pipe2(p[:], syscall.O_NONBLOCK|syscall.O_CLOEXEC))
			r := os.NewFile(uintptr(p[0]), "r")
			w := os.NewFile(uintptr(p[1]), "w")
			must(r.Close())
			must(w.Close())
		}
		cycles += 512
		now = time.Now()
	}
	fmt.Printf("micro name=openclose impl=go per_s=%.0f\n", float64(cycles)/now.Sub(start).Seconds())
}

func benchDeadline(nfds int) {
	files := make([]*os.File, 0, nfds+1)
	for len(files) < nfds {
		r, w, err := os.Pipe()
		must(err)
		files = append(files, r, w)
	}
	base := time.Now().Add(60 * time.Second)
	for i := 0; i < nfds; i++ {
		must(files[i].SetDeadline(base.Add(time.Duration(i))))
	}
	calls := 0
	k := 0
	start := time.Now()
	end := start.Add(time.Duration(seconds * float64(time.Second)))
	now := start
	for now.Before(end) {
		for i := 0; i < 256; i++ {
			must(files[k].SetDeadline(base.Add(time.Duration((calls + i) & 4095))))
			k++
			if k == nfds {
				k = 0
			}
		}
		calls += 256
		now = time.Now()
	}
	for _, f := range files {
		f.Close()
	}
	fmt.Printf("micro name=deadline%d impl=go per_s=%.0f\n", nfds, float64(calls)/now.Sub(start).Seconds())
}

func main() {
	if len(os.Args) > 1 {
		v, err := strconv.ParseFloat(os.Args[1], 64)
		must(err)
		seconds = v
	}
	if len(os.Args) > 2 {
		v, err := strconv.Atoi(os.Args[2])
		must(err)
		wakeIterations = v
	}
	tests := "wake,pingpong,openclose,deadline"
	if len(os.Args) > 3 {
		tests = os.Args[3]
	}
	if strings.Contains(tests, "wake") {
		benchWake()
	}
	if strings.Contains(tests, "pingpong") {
		benchPingPong()
	}
	if strings.Contains(tests, "openclose") {
		benchOpenClose()
	}
	if strings.Contains(tests, "deadline") {
		benchDeadline(1)
		benchDeadline(1000)
	}
}
