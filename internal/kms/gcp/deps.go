// Package gcp is the Google Cloud KMS provider.
package gcp

import (
	kmsapi "cloud.google.com/go/kms/apiv1"
	"cloud.google.com/go/kms/apiv1/kmspb"
	"google.golang.org/api/option"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

var (
	_ = kmsapi.NewKeyManagementClient
	_ = kmspb.EncryptRequest{}
	_ = option.WithEndpoint
	_ = grpc.NewServer
	_ = codes.OK
	_ = status.Error
	_ = credentials.NewTLS
	_ = wrapperspb.Int64
)
