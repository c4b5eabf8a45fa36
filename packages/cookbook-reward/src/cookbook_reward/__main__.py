from cookbook_reward.cli import main

main()
