module github.com/logtally/logtally/deploy/chartcheck

go 1.26.8

require (
	gopkg.in/yaml.v3 v3.0.1
	sigs.k8s.io/yaml v1.6.0
)

require go.yaml.in/yaml/v2 v2.4.2 // indirect
