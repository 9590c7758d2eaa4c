from feedback_monitor.cli import main

main()
