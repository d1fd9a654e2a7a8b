package client_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/troupe-db/troupe/transport/client"
)

// A client of a three-node cluster: create a user, read it back on any
// node with read-your-writes, change it only if nobody else did, and list
// all users page by page.
func Example() {
	cfg := client.DefaultConfig()
	cfg.Nodes = []string{"http://10.0.0.1:8080", "http://10.0.0.2:8080", "http://10.0.0.3:8080"}
	c, err := client.New(cfg)
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	u, meta, err := c.CreateUser(ctx, client.NewUser{Name: "Ada", Email: "ada@example.com"})
	switch {
	case client.IsConflict(err):
		log.Fatal("that email is taken")
	case client.OutcomeUnknown(err):
		// Every attempt timed out in the cluster: repeat later with the
		// same key to learn whether it was applied.
		_, _, err = c.CreateUser(ctx, client.NewUser{Name: "Ada", Email: "ada@example.com"},
			client.WithIdempotencyKey(meta.IdempotencyKey))
	}
	if err != nil {
		log.Fatal(err)
	}
	u, meta, err = c.GetUser(ctx, u.ID, client.ReadOptions{Consistency: client.Stale, MinIndex: meta.Index})
	if err != nil {
		log.Fatal(err)
	}
	if _, _, err := c.PatchUser(ctx, u.ID, client.UserPatch{Name: new("Ada King")}, meta.Version); client.IsPreconditionFailed(err) {
		log.Print("changed meanwhile; reload and try again")
	}
	err = c.AllUsers(ctx, client.ListOptions{Limit: 500}, func(u client.User) error {
		fmt.Println(u.ID, u.Email)
		return nil
	})
	if err != nil {
		log.Fatal(err)
	}
}
