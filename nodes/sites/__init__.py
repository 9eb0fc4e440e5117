"""Where the SAE reads and writes inside FLUX: the site table, the tap that hooks a site, the shared site inputs and short samplings."""
