package main

import (
	"crypto/tls"
	"fmt"
	"net"
	"net/http"

	"go.etcd.io/etcd/client/pkg/v3/transport"
)

// tlsListener serves TLS on l with info's certificate; with clientAuth,
// a client must present a certificate info's CA signed.
func tlsListener(l net.Listener, info transport.TLSInfo, clientAuth bool) (net.Listener, error) {
	info.ClientCertAuth = clientAuth
	if !clientAuth {
		// etcd's ServerConfig asks for client certificates whenever a CA
		// is set; without --client-cert-auth the CA only serves requests
		// this node forwards to the leader.
		info.TrustedCAFile = ""
	}
	cfg, err := info.ServerConfig()
	if err != nil {
		return nil, fmt.Errorf("tls: %w", err)
	}
	return tls.NewListener(l, cfg), nil
}

// forwardTransport is how a node forwards a request to the leader's API:
// trusting the client CA, presenting its own certificate (other nodes may
// ask clients for one). nil for plain HTTP: the default.
func forwardTransport(info transport.TLSInfo) http.RoundTripper {
	if info.Empty() {
		return nil
	}
	cfg, err := info.ClientConfig()
	if err != nil { // checked by config.validate
		return nil
	}
	return &http.Transport{TLSClientConfig: cfg, Proxy: http.ProxyFromEnvironment}
}
