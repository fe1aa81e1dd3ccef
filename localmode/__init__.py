"""Run the system on one machine, as deployed: ``harness`` configures and feeds the real handlers in one
process (what the evaluation, the benchmarks and the tests use too); ``stack`` adds moto's server, the
queue worker, the API Gateway stand-in and the web page; ``cli`` is the ``imgsearch`` command."""
