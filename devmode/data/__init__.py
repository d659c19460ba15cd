"""Datasets: reading uploaded files (formats, encodings), storing them as tables with column
roles and a stratified split, and the labelled examples a run trains on."""
