"""`python -m servicios.cli`: lo mismo que la orden `gpr`."""

from servicios.cli.principal import app

app(prog_name="gpr")
