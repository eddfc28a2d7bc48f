from simpro_counter.cli import main

main()
