"""Copy raw and normalised streams into partitioned Parquet files (the archive stage)."""
