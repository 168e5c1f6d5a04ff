from bulk.cli import main

main()
