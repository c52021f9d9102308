package bridge

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hookbridge/hookbridge/bridge/signature"
)

// writeCert writes a self-signed certificate for 127.0.0.1 with the given
// serial, and returns it for the client's trust pool.
func writeCert(t *testing.T, certFile, keyFile string, serial int64) *x509.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: "hookbridge test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, IsCA: true, BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return cert
}

func TestTLSListener(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	first := writeCert(t, certFile, keyFile, 1)
	yaml := fmt.Sprintf(`
server:
  listen: "127.0.0.1:0"
  admin_listen: "127.0.0.1:0"
  tls: {cert_file: %q, key_file: %q}
delivery: sync
sources:
  - {name: s, secrets: [whsec_tls]}
sinks:
  - {name: f, type: file, path: %q}
routes:
  - {name: r, status: ["*"], to: [{sink: f}]}
`, certFile, keyFile, filepath.Join(dir, "events.jsonl"))
	svc := startYAML(t, "tls.yaml", yaml, nil)
	url := "https://" + svc.Addr().String() + "/webhook"

	client := func(cert *x509.Certificate, maxVersion uint16) *http.Client {
		pool := x509.NewCertPool()
		pool.AddCert(cert)
		return &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MaxVersion: maxVersion}}}
	}
	body := `{"task_id":"t","status":"finished"}`
	post := func(c *http.Client) (int, error) {
		req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
		if err := signature.SignRequest(req, []byte(body), []byte("whsec_tls"), strconv.FormatInt(time.Now().Unix(), 10)); err != nil {
			t.Fatal(err)
		}
		resp, err := c.Do(req)
		if err != nil {
			return 0, err
		}
		resp.Body.Close()
		return resp.StatusCode, nil
	}
	if code, err := post(client(first, 0)); err != nil || code != 200 {
		t.Fatalf("over TLS: %d %v", code, err)
	}
	if _, err := post(client(first, tls.VersionTLS11)); err == nil {
		t.Error("a TLS 1.1 client was served")
	}
	if resp, err := http.Post("http://"+svc.Addr().String()+"/webhook", "application/json", strings.NewReader(body)); err == nil {
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("plain HTTP to the TLS listener: %d", resp.StatusCode)
		}
	}

	// A renewed certificate is served without a restart.
	second := writeCert(t, certFile, keyFile, 2)
	later := time.Now().Add(2 * time.Second)
	os.Chtimes(certFile, later, later)
	os.Chtimes(keyFile, later, later)
	deadline := time.Now().Add(30 * time.Second)
	for {
		conn, err := tls.Dial("tcp", svc.Addr().String(), &tls.Config{InsecureSkipVerify: true})
		if err != nil {
			t.Fatal(err)
		}
		serial := conn.ConnectionState().PeerCertificates[0].SerialNumber.Int64()
		conn.Close()
		if serial == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the renewed certificate was never served")
		}
		time.Sleep(100 * time.Millisecond)
	}
	if code, err := post(client(second, 0)); err != nil || code != 200 {
		t.Fatalf("with the renewed certificate: %d %v", code, err)
	}
}
