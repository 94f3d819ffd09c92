from hamlet.cli import main

main()
