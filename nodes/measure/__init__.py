"""Measure Activation Scale: recording a site, the statistics, the report and the plot."""
