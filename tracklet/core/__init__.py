"""The recording core: run API, value conversion, encoder, background sender, record log, reader."""
