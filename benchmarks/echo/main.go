// Command echo is a tiny HTTP server for the load-engine benchmark and manual tests.
//
// It answers every request at once with a short JSON body, counts requests, and can be
// told to fail or stall: GET /_stats returns {"requests": N, "bad_traceparent": M},
// ?status=NNN answers with that status, ?delay=MS waits before answering, and
// GET /_freeze?ms=N freezes the server for N ms from now: every request that arrives or
// is being answered in that time is answered when it ends (a stalled dependency).
// Standard library only; listens on 127.0.0.1 only.
package main

import (
	"flag"
	"fmt"
	"log"
	"net/http"
	"regexp"
	"strconv"
	"sync/atomic"
	"time"
)

var traceparent = regexp.MustCompile(`^00-[0-9a-f]{32}-[0-9a-f]{16}-01$`)

func main() {
	addr := flag.String("addr", "127.0.0.1:8580", "listen address (127.0.0.1 only)")
	flag.Parse()

	var requests, badTrace, frozenUntil atomic.Int64
	mux := http.NewServeMux()
	mux.HandleFunc("/_freeze", func(w http.ResponseWriter, r *http.Request) {
		ms, err := strconv.Atoi(r.URL.Query().Get("ms"))
		if err != nil || ms <= 0 || ms > 60000 {
			http.Error(w, "expected ?ms=N with 0 < N <= 60000", http.StatusBadRequest)
			return
		}
		frozenUntil.Store(time.Now().Add(time.Duration(ms) * time.Millisecond).UnixNano())
		fmt.Fprintf(w, `{"frozen_ms":%d}`, ms)
	})
	mux.HandleFunc("/_stats", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"requests":%d,"bad_traceparent":%d}`, requests.Load(), badTrace.Load())
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		if !traceparent.MatchString(r.Header.Get("traceparent")) {
			badTrace.Add(1)
		}
		q := r.URL.Query()
		if ms, err := strconv.Atoi(q.Get("delay")); err == nil && ms > 0 {
			time.Sleep(time.Duration(ms) * time.Millisecond)
		}
		if wait := time.Until(time.Unix(0, frozenUntil.Load())); wait > 0 {
			time.Sleep(wait)
		}
		status := http.StatusOK
		if s, err := strconv.Atoi(q.Get("status")); err == nil && s >= 200 && s < 600 {
			status = s
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		fmt.Fprintf(w, `{"id":%d,"ok":true}`, requests.Load())
	})
	server := &http.Server{
		Addr:              *addr,
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       60 * time.Second,
	}
	log.Printf("echo listening on %s", *addr)
	log.Fatal(server.ListenAndServe())
}
