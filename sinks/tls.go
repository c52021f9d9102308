package sinks

import (
	"crypto/tls"
	"crypto/x509"
	"os"
)

// LoadTLSFiles adds to conf the files of a sink's tls keys: caFile, a PEM
// bundle that replaces the system's roots, and certFile with keyFile, a
// client certificate. Empty names are skipped. Problems are
// *ConfigError values under "tls.ca_file" and "tls.cert_file".
func LoadTLSFiles(conf *tls.Config, caFile, certFile, keyFile string) error {
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return Problemf("tls.ca_file", "%v", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return Problemf("tls.ca_file", "%q holds no PEM certificate", caFile)
		}
		conf.RootCAs = pool
	}
	if certFile != "" {
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return Problemf("tls.cert_file", "load %q with key %q: %v", certFile, keyFile, err)
		}
		conf.Certificates = []tls.Certificate{cert}
	}
	return nil
}
