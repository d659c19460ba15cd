"""devmode's entry point: `streamlit run app.py`. The pages, with their titles, icons and
addresses, are listed once in ``devmode.ui.PAGES``; Home is at ``/``."""

from devmode import ui

ui.navigation().run()
