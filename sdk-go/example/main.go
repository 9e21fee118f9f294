// An example service: evaluates a flag for a user every second and prints changes as they
// arrive. Run with VEXIL_SDK_KEY (a server key) and optionally VEXIL_ENDPOINT.
package main

import (
	"context"
	"log"
	"os"
	"os/signal"
	"time"

	vexil "github.com/vexil-flags/vexil/sdk-go"
)

func main() {
	endpoint := os.Getenv("VEXIL_ENDPOINT")
	if endpoint == "" {
		endpoint = "http://127.0.0.1:50051"
	}
	start, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	client, err := vexil.NewClient(start, os.Getenv("VEXIL_SDK_KEY"), vexil.WithEndpoint(endpoint))
	if client == nil {
		log.Fatal(err)
	}
	defer client.Close()
	if err != nil {
		log.Printf("starting without fresh data: %v", err)
	}

	alice, err := vexil.NewContext("user", "alice").Set("plan", "enterprise").Build()
	if err != nil {
		log.Fatal(err)
	}
	defer alice.Close()

	changes, err := client.Subscribe()
	if err != nil {
		log.Fatal(err)
	}
	defer changes.Close()

	stop, _ := signal.NotifyContext(context.Background(), os.Interrupt)
	ticker := time.NewTicker(time.Second)
	defer ticker.Stop()
	for {
		select {
		case change := <-changes.C:
			log.Printf("changed at version %d: %v", change.Version, change.FlagKeys)
		case <-ticker.C:
			detail := client.BoolVariationDetail("new-checkout", alice, false)
			log.Printf("new-checkout = %v (%s, source %s)", detail.Value, detail.Reason.Kind, detail.Source)
		case <-stop.Done():
			return
		}
	}
}
