from cookbook_train.cli import main

main()
