"""`python -m exodus_lightning ...` is `exodus-lightning ...`."""

from exodus_lightning.cli import main

if __name__ == "__main__":
    main()
