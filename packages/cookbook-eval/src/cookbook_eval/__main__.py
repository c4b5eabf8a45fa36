from cookbook_eval.cli import main

main()
