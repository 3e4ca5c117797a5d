"""`python -m charseq`, the same as the `charseq` command."""

try:
    from charseq.console import main
except KeyboardInterrupt:  # Ctrl-C this early still ends quietly
    raise SystemExit(130) from None

main()
