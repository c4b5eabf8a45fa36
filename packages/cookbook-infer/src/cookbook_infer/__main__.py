from cookbook_infer.cli import main

main()
