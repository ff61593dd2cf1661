package config

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func flags() (*flag.FlagSet, *string, *int, *time.Duration, *string) {
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	url := fs.String("nats.url", "", "")
	rep := fs.Int("nats.replicas", 1, "")
	fl := fs.Duration("aggregator.flush-interval", time.Second, "")
	fs.String(FileFlag, "", "")
	tcp := fs.String("ingest.tcp.addr", ":8888", "")
	return fs, url, rep, fl, tcp
}

func TestPrecedence(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "c.yaml")
	yaml := "nats:\n  url: [nats://a:4222, nats://b:4222]\n  replicas: 3\naggregator:\n  flush-interval: 250ms\ningest:\n  tcp:\n    addr: ':9999'\n"
	if err := os.WriteFile(file, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("LT_NATS_REPLICAS", "5")
	fs, url, rep, fl, tcp := flags()
	if err := Parse(fs, []string{"-config.file=" + file, "-ingest.tcp.addr=:7777"}, "LT_"); err != nil {
		t.Fatal(err)
	}
	if *url != "nats://a:4222,nats://b:4222" {
		t.Errorf("file list: %q", *url)
	}
	if *rep != 5 {
		t.Errorf("environment must beat file: %d", *rep)
	}
	if *fl != 250*time.Millisecond {
		t.Errorf("file value: %s", *fl)
	}
	if *tcp != ":7777" {
		t.Errorf("command line must beat file: %q", *tcp)
	}
}

func TestConfigFileFromEnvironment(t *testing.T) {
	file := filepath.Join(t.TempDir(), "c.yaml")
	if err := os.WriteFile(file, []byte("nats:\n  replicas: 3\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("LT_CONFIG_FILE", file)
	fs, _, rep, _, _ := flags()
	if err := Parse(fs, nil, "LT_"); err != nil {
		t.Fatal(err)
	}
	if *rep != 3 {
		t.Errorf("replicas %d", *rep)
	}
}

func TestErrors(t *testing.T) {
	dir := t.TempDir()
	unknown := filepath.Join(dir, "u.yaml")
	os.WriteFile(unknown, []byte("nats:\n  ur1: x\n"), 0o600)
	bad := filepath.Join(dir, "b.yaml")
	os.WriteFile(bad, []byte("nats:\n  replicas: many\n"), 0o600)
	broken := filepath.Join(dir, "x.yaml")
	os.WriteFile(broken, []byte("nats: [\n"), 0o600)
	for name, c := range map[string]struct {
		args []string
		want string
	}{
		"unknown key": {[]string{"-config.file=" + unknown}, `unknown setting "nats.ur1"`},
		"bad value":   {[]string{"-config.file=" + bad}, "config file key nats.replicas"},
		"bad yaml":    {[]string{"-config.file=" + broken}, "parse config file"},
		"missing":     {[]string{"-config.file=" + filepath.Join(dir, "none.yaml")}, "read config file"},
	} {
		fs, _, _, _, _ := flags()
		err := Parse(fs, c.args, "LT_")
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want %q", name, err, c.want)
		}
	}
	t.Setenv("LT_NATS_REPLICAS", "x")
	fs, _, _, _, _ := flags()
	if err := Parse(fs, nil, "LT_"); err == nil || !strings.Contains(err.Error(), "environment LT_NATS_REPLICAS") {
		t.Errorf("bad env value: %v", err)
	}
}
