package httpsink

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// testCA is a certificate authority made for one test.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

func newCA(t *testing.T) *testCA {
	t.Helper()
	key := newKey(t)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "hookbridge test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &testCA{cert: cert, key: key}
}

func newKey(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return key
}

// clientCert issues a client certificate and writes it and its key as
// PEM files in dir.
func (ca *testCA) clientCert(t *testing.T, dir string) (certFile, keyFile string) {
	t.Helper()
	key := newKey(t)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "hookbridge"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "client.pem"), filepath.Join(dir, "client-key.pem")
	writePEM(t, certFile, "CERTIFICATE", der)
	writePEM(t, keyFile, "EC PRIVATE KEY", keyDER)
	return certFile, keyFile
}

func writePEM(t *testing.T, path, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestTLSClientCertificate POSTs over https to a receiver that requires
// a client certificate from its CA: with tls.cert_file and key_file the
// event is confirmed and verified; without them, or without the CA that
// signed the receiver's certificate, it fails for a retry.
func TestTLSClientCertificate(t *testing.T) {
	dir := t.TempDir()
	ca := newCA(t)
	secret := newSecret(t)
	rc := newTLSReceiver(t, ca.cert, secret)
	serverCA := filepath.Join(dir, "server-ca.pem")
	writePEM(t, serverCA, "CERTIFICATE", rc.srv.Certificate().Raw)
	certFile, keyFile := ca.clientCert(t, dir)

	tests := []struct {
		name      string
		tls       TLSConfig
		wantInErr string // "": confirmed
	}{
		{"client certificate", TLSConfig{CAFile: serverCA, CertFile: certFile, KeyFile: keyFile}, ""},
		{"no client certificate", TLSConfig{CAFile: serverCA}, "certificate required"},
		{"system roots only", TLSConfig{CertFile: certFile, KeyFile: keyFile}, "certificate signed by unknown authority"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := openSink(t, Config{Secret: secret, TLS: tt.tls})
			err := publishOne(t, s, rc.URL("/hook"))
			switch {
			case tt.wantInErr == "" && err != nil:
				t.Fatalf("Publish: %v", err)
			case tt.wantInErr != "" && (classify(err) != retryable || !strings.Contains(err.Error(), tt.wantInErr) || !strings.Contains(err.Error(), "check the sink's tls settings")):
				t.Errorf("Publish: %v, want a retryable error holding %q and pointing at the tls settings", err, tt.wantInErr)
			}
		})
	}
	if got := rc.received(t); len(got) != 1 {
		t.Errorf("the receiver accepted %d requests, want 1", len(got))
	}
}
