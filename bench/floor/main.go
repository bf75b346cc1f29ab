// The floor the benchmarks hold drain-sidecar against: the same /healthz, /sleep, /drain and /metrics (as many series)
// on Go's standard library and nothing else: no socket reads, no drain episodes, no logs. It prints the start line the
// benchmarks wait for, as the sidecar does. Built by bench/floor.mjs when Go is installed (Debian: golang-go).
package main

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync/atomic"
	"time"
)

// The series a scrape of the sidecar in passive mode returns (bench/scrape.mjs).
const series = 73

func main() {
	var hooks atomic.Int64
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Write([]byte("ok\n"))
	})
	// /drain holds its min: the floor watches no traffic.
	hold := func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		if !q.Has("s") {
			q.Set("s", q.Get("min"))
		}
		s, err := strconv.ParseFloat(q.Get("s"), 64)
		if err != nil || s < 0 || s > 60 {
			s = 20
		}
		hooks.Add(1)
		time.Sleep(time.Duration(s * float64(time.Second)))
		w.Header().Set("content-type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{"endpoint": r.URL.Path[1:], "heldSeconds": s})
	}
	mux.HandleFunc("/sleep", hold)
	mux.HandleFunc("/drain", hold)
	mux.HandleFunc("/metrics", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("content-type", "text/plain; version=0.0.4")
		fmt.Fprintf(w, "# HELP floor_hook_calls_total Hook calls.\n# TYPE floor_hook_calls_total counter\n")
		fmt.Fprintf(w, "floor_hook_calls_total %d\n", hooks.Load())
		for i := 1; i < series; i++ {
			fmt.Fprintf(w, "floor_series{n=\"%d\"} %d\n", i, i)
		}
	})

	host, port := os.Getenv("DRAIN_HOST"), os.Getenv("DRAIN_PORT")
	if port == "" {
		port = "9555"
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(host, port))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	addr := ln.Addr().(*net.TCPAddr)
	start, _ := json.Marshal(map[string]any{
		"msg":     "drain-sidecar started",
		"address": map[string]any{"address": addr.IP.String(), "port": addr.Port},
	})
	fmt.Println(string(start))
	server := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	fmt.Fprintln(os.Stderr, server.Serve(ln))
}
