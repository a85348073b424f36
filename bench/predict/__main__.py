from bench.predict.run import main

main()
