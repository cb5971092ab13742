from vae_lab.report import main

main()
