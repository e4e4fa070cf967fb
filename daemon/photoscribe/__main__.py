from photoscribe.cli import entry

entry()
