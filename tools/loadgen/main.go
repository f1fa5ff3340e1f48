// Command loadgen drives an OpenAI-compatible server for `make bench-proxy`: closed-loop
// requests or SSE streams from C workers for a fixed time, on 127.0.0.1 only. It prints one
// JSON object: request rate and latency percentiles, or, for streams, chunk rate, time to first
// chunk and the gap between chunks. Written in Go so that the load generator, pinned to one
// core, is never what the benchmark measures.
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"sort"
	"strings"
	"sync"
	"time"
)

type result struct {
	Requests   int            `json:"requests"`
	Errors     int            `json:"errors"`
	Codes      map[string]int `json:"codes"`
	Seconds    float64        `json:"seconds"`
	RPS        float64        `json:"rps"`
	P50ms      float64        `json:"p50_ms"`
	P99ms      float64        `json:"p99_ms"`
	Chunks     int            `json:"chunks,omitempty"`
	ChunksPerS float64        `json:"chunks_per_s,omitempty"`
	TTFTp50ms  float64        `json:"ttft_p50_ms,omitempty"`
	TTFTp99ms  float64        `json:"ttft_p99_ms,omitempty"`
	GapP99ms   float64        `json:"gap_p99_ms,omitempty"`
}

type worker struct {
	latencies []time.Duration
	ttfts     []time.Duration
	gaps      []time.Duration
	chunks    int
	errors    int
	codes     map[string]int
}

func percentile(values []time.Duration, p float64) float64 {
	if len(values) == 0 {
		return 0
	}
	sort.Slice(values, func(i, j int) bool { return values[i] < values[j] })
	index := int(p * float64(len(values)-1))
	return float64(values[index].Microseconds()) / 1000
}

func main() {
	target := flag.String("url", "", "endpoint, e.g. http://127.0.0.1:8080/v1/completions")
	body := flag.String("body", "", "JSON request body")
	key := flag.String("key", "", "bearer key, if any")
	concurrency := flag.Int("c", 1, "workers")
	duration := flag.Duration("d", 10*time.Second, "how long to send")
	stream := flag.Bool("stream", false, "read the answers as SSE and time each chunk")
	flag.Parse()
	parsed, err := url.Parse(*target)
	if err != nil || (parsed.Hostname() != "127.0.0.1" && parsed.Hostname() != "::1") {
		fmt.Fprintln(os.Stderr, "loadgen: -url must be on 127.0.0.1 or ::1")
		os.Exit(2)
	}
	transport := &http.Transport{MaxIdleConnsPerHost: *concurrency, MaxConnsPerHost: *concurrency,
		DisableCompression: true}
	client := &http.Client{Transport: transport, Timeout: *duration + 60*time.Second}
	deadline := time.Now().Add(*duration)
	workers := make([]*worker, *concurrency)
	var wait sync.WaitGroup
	started := time.Now()
	for i := range workers {
		w := &worker{codes: map[string]int{}}
		workers[i] = w
		wait.Add(1)
		go func() {
			defer wait.Done()
			for time.Now().Before(deadline) {
				request, _ := http.NewRequest("POST", *target, bytes.NewBufferString(*body))
				request.Header.Set("Content-Type", "application/json")
				if *key != "" {
					request.Header.Set("Authorization", "Bearer "+*key)
				}
				begin := time.Now()
				answer, err := client.Do(request)
				if err != nil {
					w.errors++
					time.Sleep(10 * time.Millisecond)
					continue
				}
				w.codes[fmt.Sprint(answer.StatusCode)]++
				if *stream && answer.StatusCode == 200 {
					reader := bufio.NewReader(answer.Body)
					last := begin
					first := true
					for {
						line, err := reader.ReadString('\n')
						if strings.HasPrefix(line, "data:") {
							now := time.Now()
							if first {
								w.ttfts = append(w.ttfts, now.Sub(begin))
								first = false
							} else {
								w.gaps = append(w.gaps, now.Sub(last))
							}
							last = now
							w.chunks++
						}
						if err != nil {
							break
						}
					}
				} else {
					io.Copy(io.Discard, answer.Body)
				}
				answer.Body.Close()
				w.latencies = append(w.latencies, time.Since(begin))
			}
		}()
	}
	wait.Wait()
	elapsed := time.Since(started).Seconds()
	out := result{Codes: map[string]int{}, Seconds: elapsed}
	var latencies, ttfts, gaps []time.Duration
	for _, w := range workers {
		latencies = append(latencies, w.latencies...)
		ttfts = append(ttfts, w.ttfts...)
		gaps = append(gaps, w.gaps...)
		out.Errors += w.errors
		out.Chunks += w.chunks
		for code, n := range w.codes {
			out.Codes[code] += n
		}
	}
	out.Requests = len(latencies)
	out.RPS = float64(out.Requests) / elapsed
	out.P50ms = percentile(latencies, 0.50)
	out.P99ms = percentile(latencies, 0.99)
	if *stream {
		out.ChunksPerS = float64(out.Chunks) / elapsed
		out.TTFTp50ms = percentile(ttfts, 0.50)
		out.TTFTp99ms = percentile(ttfts, 0.99)
		out.GapP99ms = percentile(gaps, 0.99)
	}
	json.NewEncoder(os.Stdout).Encode(out)
}
