package bridge

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/hookbridge/hookbridge/bridge/config"
)

// certReloader holds the listener's certificate and reloads it when its
// files change. A broken new pair is logged and the old one kept.
type certReloader struct {
	certFile, keyFile string
	log               *slog.Logger

	mu        sync.Mutex
	cert      *tls.Certificate
	certMod   time.Time
	keyMod    time.Time
	lastCheck time.Time
}

func newCertReloader(c config.TLS, log *slog.Logger) (*certReloader, error) {
	r := &certReloader{certFile: c.CertFile, keyFile: c.KeyFile, log: log}
	if err := r.load(); err != nil {
		return nil, fmt.Errorf("server.tls: %w", err)
	}
	return r, nil
}

func (r *certReloader) load() error {
	certInfo, err := os.Stat(r.certFile)
	if err != nil {
		return err
	}
	keyInfo, err := os.Stat(r.keyFile)
	if err != nil {
		return err
	}
	cert, err := tls.LoadX509KeyPair(r.certFile, r.keyFile)
	if err != nil {
		return fmt.Errorf("load certificate %q and key %q: %w", r.certFile, r.keyFile, err)
	}
	r.cert, r.certMod, r.keyMod = &cert, certInfo.ModTime(), keyInfo.ModTime()
	return nil
}

// GetCertificate implements tls.Config.GetCertificate.
func (r *certReloader) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if now := time.Now(); now.Sub(r.lastCheck) >= time.Second {
		r.lastCheck = now
		if r.changed() {
			old := r.cert
			if err := r.load(); err != nil {
				r.cert = old
				r.log.Error("server.tls: the changed certificate does not load; serving the previous one", "err", err)
			} else {
				r.log.Info("server.tls: certificate reloaded", "cert_file", r.certFile)
			}
		}
	}
	return r.cert, nil
}

func (r *certReloader) changed() bool {
	ci, err1 := os.Stat(r.certFile)
	ki, err2 := os.Stat(r.keyFile)
	return err1 == nil && err2 == nil && (!ci.ModTime().Equal(r.certMod) || !ki.ModTime().Equal(r.keyMod))
}

// tlsConfig is the listener's TLS configuration: TLS 1.2 or later, Go's
// default cipher suites (all AEAD with forward secrecy for 1.2).
func (r *certReloader) tlsConfig() *tls.Config {
	return &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: r.GetCertificate}
}
