module resilience/benchmarks/echo

go 1.26.8
