"""Where the SAE reads and writes inside the model: the site tables (FLUX, UNets, DiTs), the taps that hook a site,
the shared site inputs and short samplings."""
