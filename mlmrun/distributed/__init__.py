"""Work spread over a Dask cluster: batches of fits, replicate loops, and (partitions) one fit over many machines."""
