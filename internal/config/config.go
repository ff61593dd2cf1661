// Package config loads flags with the precedence command line > environment
// (LOGTALLY_<FLAG> with dots and dashes as underscores) > YAML file > default.
// The YAML file nests by the dots of flag names: nats.url is nats: {url: ...}.
package config

import (
	"flag"
	"fmt"
	"os"
	"sort"
	"strings"

	"gopkg.in/yaml.v3"
)

// FileFlag is the flag naming the YAML file.
const FileFlag = "config.file"

// EnvName is the environment variable of a flag.
func EnvName(prefix, flagName string) string {
	r := strings.NewReplacer(".", "_", "-", "_")
	return prefix + strings.ToUpper(r.Replace(flagName))
}

// Parse parses args into fs, then fills flags not given on the command line
// from the environment and the YAML file named by -config.file (if registered).
func Parse(fs *flag.FlagSet, args []string, envPrefix string) error {
	if err := fs.Parse(args); err != nil {
		return err
	}
	explicit := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { explicit[f.Name] = true })

	fromFile := map[string]string{}
	if f := fs.Lookup(FileFlag); f != nil {
		path := f.Value.String()
		if !explicit[FileFlag] {
			if v, ok := os.LookupEnv(EnvName(envPrefix, FileFlag)); ok {
				path = v
			}
		}
		if path != "" {
			var err error
			if fromFile, err = readFile(path); err != nil {
				return err
			}
		}
	}
	keys := make([]string, 0, len(fromFile))
	for k := range fromFile {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if fs.Lookup(k) == nil {
			return fmt.Errorf("config file: unknown setting %q", k)
		}
	}
	var errs []string
	fs.VisitAll(func(f *flag.Flag) {
		if explicit[f.Name] || f.Name == FileFlag {
			return
		}
		v, ok := os.LookupEnv(EnvName(envPrefix, f.Name))
		src := "environment " + EnvName(envPrefix, f.Name)
		if !ok {
			v, ok = fromFile[f.Name]
			src = "config file key " + f.Name
		}
		if !ok {
			return
		}
		if err := f.Value.Set(v); err != nil {
			errs = append(errs, fmt.Sprintf("%s: %v", src, err))
		}
	})
	if len(errs) > 0 {
		return fmt.Errorf("config: %s", strings.Join(errs, "; "))
	}
	return nil
}

func readFile(path string) (map[string]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config file: %w", err)
	}
	var doc map[string]any
	if err := yaml.Unmarshal(b, &doc); err != nil {
		return nil, fmt.Errorf("parse config file %s: %w", path, err)
	}
	out := map[string]string{}
	flatten("", doc, out)
	return out, nil
}

func flatten(prefix string, v any, out map[string]string) {
	switch t := v.(type) {
	case map[string]any:
		for k, sub := range t {
			key := k
			if prefix != "" {
				key = prefix + "." + k
			}
			flatten(key, sub, out)
		}
	case []any:
		parts := make([]string, len(t))
		for i, e := range t {
			parts[i] = fmt.Sprint(e)
		}
		out[prefix] = strings.Join(parts, ",")
	case nil:
		out[prefix] = ""
	default:
		out[prefix] = fmt.Sprint(t)
	}
}
