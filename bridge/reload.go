package bridge

import (
	"bytes"
	"context"
	"os"
	"time"

	"github.com/hookbridge/hookbridge/bridge/config"
)

// ReloadFile loads the config at path and swaps it in. An invalid file
// keeps the running config, and says why in the log and in the
// hookbridge_config_reloads_total{result="failure"} metric.
func (s *Service) ReloadFile(ctx context.Context, path string, lookupEnv func(string) (string, bool)) error {
	cfg, err := config.Load(path, lookupEnv)
	if err != nil {
		s.reloadFailed(err)
		return err
	}
	return s.Reload(ctx, cfg)
}

// WatchConfig reloads the config at path whenever its content changes,
// checking every interval, until ctx ends. Polling the content rather than
// watching inotify events also sees Kubernetes' ConfigMap updates, which
// swap a symlink.
func (s *Service) WatchConfig(ctx context.Context, path string, lookupEnv func(string) (string, bool), interval time.Duration) {
	// Compare with what the running config was loaded from: a change made
	// between loading and watching is still seen.
	last := s.Config().Raw()
	if last == nil {
		last, _ = os.ReadFile(path)
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		data, err := os.ReadFile(path)
		if err != nil || bytes.Equal(data, last) {
			continue // unchanged, or an invalid version already tried
		}
		last = data
		s.log.Info("config file changed; reloading", "path", path)
		_ = s.ReloadFile(ctx, path, lookupEnv) // logged and counted
	}
}
