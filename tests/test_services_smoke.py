import psycopg
from pyarrow import fs


def test_postgres_answers(postgres, pg_database):
    with psycopg.connect(postgres.url(pg_database)) as conn:
        assert conn.execute("select 1 + 1").fetchone() == (2,)


def test_s3_round_trip(s3):
    bucket = s3.create_bucket()
    filesystem = fs.S3FileSystem(
        access_key=s3.access_key, secret_key=s3.secret_key,
        endpoint_override=s3.endpoint_url, region=s3.region,
    )
    with filesystem.open_output_stream(f"{bucket}/x.txt") as out:
        out.write(b"hello")
    with filesystem.open_input_stream(f"{bucket}/x.txt") as inp:
        assert inp.read() == b"hello"
