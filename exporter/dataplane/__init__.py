"""This node's kube-proxy dataplane against the API (the ``kube_proxy`` runbook step).

Pure parts: ``names`` (chain names kube-proxy derives), ``iptables_save`` and ``nft_json`` (parsers),
``iptables_view`` / ``nft_view`` (what the rules say, per IP family), ``expected`` (what kube-proxy
should have programmed), ``compare`` (the differences), ``analysis`` (text in, findings out),
``offline`` (a saved dump against a cluster snapshot), ``report`` (the data handed to the check).
Adapters: ``readers`` (iptables-save / nft subprocesses), ``health`` (kube-proxy's HTTP endpoints),
``monitor`` (the node agent's periodic loop).
"""
