"""``make bench``: every benchmark, each printing its figures."""

from bench import http_throughput, memory

if __name__ == "__main__":
    http_throughput.main()
    print()
    memory.main()
