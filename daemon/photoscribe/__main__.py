from photoscribe.cli import main

raise SystemExit(main())
