from edgereg.cli import main

main()
