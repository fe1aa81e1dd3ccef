"""AWS's own policy evaluation, applied to the synthesized template and to recorded traffic.

``template`` resolves a template's intrinsic functions for one made-up account, so its policies become
plain JSON; ``policies`` finds the identity and resource policies that stand in front of a request;
``simulator`` asks a maintained IAM simulator (``@cloud-copilot/iam-simulate``, pinned in package.json)
whether AWS would allow it; ``traffic`` turns what a function really sent into those requests.
"""
