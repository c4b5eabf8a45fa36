from cookbook_data.cli import main

main()
