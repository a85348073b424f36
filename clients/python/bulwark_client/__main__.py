from bulwark_client.cli import main

raise SystemExit(main())
