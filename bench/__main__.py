"""``make bench``: every benchmark, each printing its figures."""

from bench import batch_ingestion, drift_eval, http_throughput, memory, replicas, windows

if __name__ == "__main__":
    http_throughput.main()
    print()
    replicas.main()
    print()
    batch_ingestion.main()
    print()
    memory.main()
    print()
    windows.main()
    print()
    drift_eval.main()
